//! Progress for the terminal: bars when a person is watching, plain lines for logs.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat::progress::{Phase, Progress};

pub struct CliProgress {
    prefix: String,
    /// Nothing at all (`-q`, or JSON on stdout).
    quiet: bool,
    bars: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl CliProgress {
    pub fn new(prefix: impl Into<String>, quiet: bool) -> Self {
        let bars = !quiet && std::io::stderr().is_terminal();
        CliProgress {
            prefix: prefix.into(),
            quiet,
            bars,
            current: Mutex::new(None),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn phase(&self, phase: Phase, total: Option<u64>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = current.take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        if !self.bars {
            eprintln!("{}: {}", self.prefix, phase.label());
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{prefix} {msg:<18} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{prefix} {msg:<18} {spinner} {elapsed}").expect("valid template")),
        };
        bar.set_prefix(self.prefix.clone());
        bar.set_message(phase.label());
        bar.enable_steady_tick(Duration::from_millis(120));
        *current = Some(bar);
    }

    fn note(&self, line: &str) {
        // Notes can quote a store's error text: no control characters reach the terminal.
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            Some(bar) => bar.suspend(|| eprintln!("{}: {line}", self.prefix)),
            None => eprintln!("{}: {line}", self.prefix),
        }
    }

    fn advance(&self, done: u64) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.set_position(done);
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
    }
}
