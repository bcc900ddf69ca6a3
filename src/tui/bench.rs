//! `lifeboat bench-console`: how fast the console opens on a large cached catalog and how
//! long a frame takes to draw. A measurement, not a test; figures go to docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use color_eyre::eyre::Result;
use crossterm::event::{KeyCode, KeyEvent};
use lifeboat::catalog::{CatalogRow, RowKind};
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::state::State;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Ctx};
use super::keys::Keymap;
use super::theme::Theme;

pub fn run(rows: usize, width: u16, height: u16) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sources = ["billing", "shop", "auth", "events", "search"];
    let mut text = format!(
        "[storage]\ntype = \"local\"\npath = \"{}\"\n",
        dir.path().join("bucket").display()
    );
    for s in sources {
        text.push_str(&format!(
            "[[source]]\nname = \"{s}\"\nengine = \"sqlite\"\npath = \"/srv/{s}.db\"\n"
        ));
    }
    let config = Config::parse(&text, &dir.path().join("lifeboat.toml"))?;
    let state = State::open(&dir.path().join("state.db"))?;
    let now = Utc::now();
    let mut rng = fastrand::Rng::with_seed(1);
    let generated: Vec<CatalogRow> = (0..rows)
        .map(|i| {
            let time = now - chrono::Duration::minutes(i as i64 * 7);
            CatalogRow {
                kind: if i % 997 == 0 {
                    RowKind::Orphan
                } else {
                    RowKind::Complete
                },
                id: format!("{}-{:04x}", time.format("%Y%m%dT%H%M%SZ"), rng.u16(..)),
                source: Some(sources[i % sources.len()].to_owned()),
                time: Some(time),
                raw_bytes: Some(rng.u64(1 << 20..1 << 34)),
                stored_bytes: rng.u64(1 << 18..1 << 32),
                duration_ms: Some(rng.i64(100..600_000)),
                tables: Some(rng.u64(1..200)),
                rows: Some(rng.u64(..1 << 30)),
                encrypted: false,
                note: None,
                copies: None,
            }
        })
        .collect();
    state.save_catalog_rows(&generated)?;
    drop(generated);

    // What `lifeboat` does before its first frame, with the bucket not yet answering.
    let start = Instant::now();
    let cached = state.load_catalog_rows(Some(super::FIRST_SCREEN_ROWS))?;
    let ctx = Ctx {
        config: Arc::new(config),
        location: "s3://bench".into(),
        clock: Clock::system(),
        keymap: Keymap::load(None).map_err(color_eyre::eyre::Report::msg)?,
        theme: Theme::colored(),
        zone: None,
    };
    let mut app = App::new(ctx);
    app.set_cached_rows(cached);
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;
    terminal.draw(|f| app.draw(f))?;
    let first_frame = start.elapsed();
    // Then the rest of the cache, as the console reads it in the background.
    let start = Instant::now();
    let all = state.load_catalog_rows(None)?;
    let loaded = start.elapsed();
    app.on_msg(super::msg::Msg::CachedRows(Ok(all)));
    let merged = start.elapsed();

    // Key to screen: handling the key (sorting 100k lines on `s`, filtering on `/`) and
    // drawing the frame it changed.
    let mut frames: Vec<Duration> = Vec::new();
    for i in 0..500 {
        let code = match i % 50 {
            0 => KeyCode::PageDown,
            10 => KeyCode::Char('s'), // sorts by the next column
            25 => KeyCode::Enter,     // toggles the detail pane
            _ => KeyCode::Down,
        };
        let t = Instant::now();
        app.on_key(KeyEvent::from(code));
        terminal.draw(|f| app.draw(f))?;
        frames.push(t.elapsed());
    }
    frames.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = frames.iter().map(|d| ms(*d)).sum::<f64>() / frames.len() as f64;
    println!("catalog rows            {rows}");
    println!("terminal                {width}x{height}");
    println!(
        "time to first frame     {:.1} ms  (newest {} cached lines: load + build views + draw)",
        ms(first_frame),
        super::FIRST_SCREEN_ROWS
    );
    println!(
        "whole cache in view     {:.1} ms  after that (load {:.1} ms on a blocking thread, then {:.1} ms rebuilding views)",
        ms(merged),
        ms(loaded),
        ms(merged - loaded)
    );
    println!(
        "key to screen           mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} keys",
        mean,
        ms(frames[frames.len() / 2]),
        ms(frames[frames.len() * 99 / 100]),
        ms(frames[frames.len() - 1]),
        frames.len()
    );
    if let Some(peak) = peak_rss() {
        println!("peak RSS                {:.1} MiB", peak as f64 / 1024.0);
    }
    Ok(())
}

/// The process's peak resident set in KiB (Linux), as `VmHWM` in `/proc/self/status`.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
