//! The console: a full-screen terminal front end over the same core the CLI uses.
//!
//! One `select!` loop receives terminal events, core messages and a frame tick. Handling an
//! event only changes state and sets a dirty flag; drawing reads state and never waits on I/O.
//! Requests go out to the [`worker::Worker`], which runs them on tokio tasks and answers with
//! messages.

mod app;
pub mod bench;
mod command;
mod fmt;
mod keys;
mod msg;
mod tabs;
#[cfg(test)]
mod tests;
mod theme;
mod timeline;
mod worker;

use std::io::stdout;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream};
use crossterm::execute;
use futures_util::StreamExt;
use lifeboat::Lifeboat;
use tokio::sync::mpsc;

pub use app::{App, Ctx};
use msg::Msg;

/// Cached catalog lines read before the first frame: more than any screen shows.
pub const FIRST_SCREEN_ROWS: usize = 500;

/// Runs the console until the user quits. The terminal is restored on every exit path,
/// panics included (ratatui's init installs a hook that restores it first).
pub async fn run(lb: Lifeboat) -> Result<()> {
    let ctx = Ctx::load(&lb)?;
    // ratatui's own hook (installed by try_init, around this one) restores raw mode and the
    // screen; mouse reporting must be switched off too, or the shell receives mouse codes.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(stdout(), DisableMouseCapture);
        previous(info);
    }));
    let mut terminal = ratatui::try_init().wrap_err("cannot open the terminal")?;
    let _ = execute!(stdout(), EnableMouseCapture);
    // Proves that a panic in a background task restores the terminal before the one error
    // line is printed (tests/it/untrusted.rs). Debug builds only.
    if cfg!(debug_assertions) && std::env::var_os("LIFEBOAT_DEBUG_PANIC").is_some() {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            panic!("LIFEBOAT_DEBUG_PANIC is set");
        });
    }
    let result = event_loop(&mut terminal, lb, ctx).await;
    let _ = execute!(stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, lb: Lifeboat, ctx: Ctx) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut worker = worker::Worker::new(lb.clone(), tx);
    let mut app = App::new(ctx);
    // The newest cached lines make the first frame; the rest of the cache follows on a
    // blocking thread, and the bucket is asked after that.
    match lb.cached_rows(Some(FIRST_SCREEN_ROWS)) {
        Ok(rows) => {
            let complete = rows.len() < FIRST_SCREEN_ROWS;
            app.set_cached_rows(rows);
            if !complete {
                let lb = lb.clone();
                let tx = worker.sender();
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(Msg::CachedRows(
                        lb.cached_rows(None).map_err(|e| e.to_string()),
                    ));
                });
            }
        }
        Err(e) => app.show_error(format!("catalog cache: {e}")),
    }
    app.start();
    // Stopped by the service manager or a closed terminal: leave through the same door as
    // `q`, so the terminal is restored; what a running job leaves is swept by a later run.
    let stop = |kind| tokio::signal::unix::signal(kind).wrap_err("cannot watch signals");
    let mut term = stop(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = stop(tokio::signal::unix::SignalKind::hangup())?;
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        for req in app.take_requests() {
            worker.handle(req);
        }
        if app.should_quit() {
            return Ok(());
        }
        if app.take_dirty() {
            terminal
                .draw(|frame| app.draw(frame))
                .wrap_err("cannot draw")?;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => app.on_key(key),
                Some(Ok(Event::Mouse(mouse))) => app.on_mouse(mouse),
                Some(Ok(Event::Resize(..))) => app.mark_dirty(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).wrap_err("terminal input"),
                None => return Ok(()),
            },
            Some(msg) = rx.recv() => {
                app.on_msg(msg);
                // Drain what else is queued before drawing once.
                while let Ok(msg) = rx.try_recv() {
                    app.on_msg(msg);
                }
            }
            _ = tick.tick() => app.on_tick(),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => return Ok(()),
        }
    }
}
