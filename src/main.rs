//! The `lifeboat` command line. With no subcommand it will open the console; every subcommand
//! is a thin front end over the library.

// SIGPIPE stays ignored (Rust's default), so a broken S3 connection is an error to retry,
// never a silent death. `println!` would then panic when the reader of our output goes away
// (`lifeboat list | head`); these versions, in scope for every module below, drop what can no
// longer be read and let the command finish its work.
macro_rules! println {
    () => {
        $crate::stdio::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdio::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdio::out(format_args!($($arg)*))
    };
}
macro_rules! eprintln {
    () => {
        $crate::stdio::err(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdio::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cli;
mod stdio;
mod tui;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

fn main() -> ExitCode {
    // Ordinary errors are printed as one line below; a panic gets one line too, from our hook.
    let (_, eyre_hook) = color_eyre::config::HookBuilder::default().into_hooks();
    let _ = eyre_hook.install();
    std::panic::set_hook(Box::new(on_panic));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run()) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("error: {}", lifeboat::escape::term(&one_line(&report)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause a message already quotes.
fn one_line(report: &color_eyre::Report) -> String {
    let mut line = String::new();
    for cause in report.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Set for `lifeboat check`: monitoring must read a panic as UNKNOWN (3), not CRITICAL.
static NAGIOS: AtomicBool = AtomicBool::new(false);

pub(crate) fn panics_are_unknown() {
    NAGIOS.store(true, Ordering::Relaxed);
}

/// The last hook in the chain: the console's hooks (installed around this one) have restored
/// the terminal by the time it runs. A panic is a bug, but it still ends as one clear line and
/// a non-zero exit, from whichever thread or task it happened on, instead of a half-finished
/// command that goes on without that task.
fn on_panic(info: &std::panic::PanicHookInfo<'_>) {
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let line = lifeboat::escape::term(&format!(
        "internal error (a bug in lifeboat; please report it): {what}{at}"
    ))
    .into_owned();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        eprintln!("{backtrace}");
    }
    if NAGIOS.load(Ordering::Relaxed) {
        println!("LIFEBOAT UNKNOWN - {line}");
        let _ = std::io::stdout().flush();
        std::process::exit(3);
    }
    eprintln!("error: {line}");
    let _ = std::io::stdout().flush();
    std::process::exit(1);
}
