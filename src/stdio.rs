//! stdout and stderr for the `println!` family defined in `main.rs`: a reader that went away
//! (a closed pipe) is not an error worth dying for. Output that cannot be delivered is
//! dropped; the work goes on and its outcome still reaches the job record and the exit code.

use std::fmt::Arguments;
use std::io::Write;

pub fn out(args: Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(args);
}

pub fn err(args: Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
