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

use std::process::ExitCode;

fn main() -> ExitCode {
    // Panics still get color-eyre's report; ordinary errors are printed as one line below.
    let _ = color_eyre::install();
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
            eprintln!("error: {}", one_line(&report));
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
    line.replace('\n', " ")
}
