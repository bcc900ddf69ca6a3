//! The `lifeboat` command line. With no subcommand it will open the console; every subcommand
//! is a thin front end over the library.

mod cli;
mod tui;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`lifeboat list | head`), as
    // Unix tools do, instead of failing a write.
    // SAFETY: called before any thread starts; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
