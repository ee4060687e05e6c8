//! The operator's output: lines on stdout (the console of `furiwake run`),
//! and state changes (a server up or down, a link, a configuration change)
//! also in the log at `info`.

use std::io::Write as _;

/// A state change: on the console and in the log at `info`.
pub fn event(line: &str) {
    log::info!("{line}");
    say(line);
}

/// A line on stdout, flushed.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
