//! The console: a full-screen terminal front end over the same core the CLI uses.
//!
//! One `select!` loop receives terminal events, core messages and a frame tick. Handling an
//! event only changes state and sets a dirty flag; drawing reads state and never waits on I/O.
//! Requests go out to the [`worker::Worker`], which runs them on tokio tasks and answers with
//! messages.

mod app;
mod fmt;
mod keys;
mod msg;
mod tabs;
#[cfg(test)]
mod tests;
mod theme;
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

/// Runs the console until the user quits. The terminal is restored on every exit path,
/// panics included (ratatui's init installs a hook that restores it first).
pub async fn run(lb: Lifeboat) -> Result<()> {
    let ctx = Ctx::load(&lb)?;
    let mut terminal = ratatui::try_init().wrap_err("cannot open the terminal")?;
    let _ = execute!(stdout(), EnableMouseCapture);
    let result = event_loop(&mut terminal, lb, ctx).await;
    let _ = execute!(stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, lb: Lifeboat, ctx: Ctx) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut worker = worker::Worker::new(lb.clone(), tx);
    let mut app = App::new(ctx);
    // The cached catalog first, so the first frame has content; the bucket is asked after.
    match lb.cached_rows() {
        Ok(rows) => app.set_cached_rows(rows),
        Err(e) => app.show_error(format!("catalog cache: {e}")),
    }
    app.start();
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
        }
    }
}
