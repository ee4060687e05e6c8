//! What a probe's answer means, and what a down server's connections
//! become.

use crate::config::{HealthCheck, OnDown};
use std::process::Child;
use std::time::Duration;

/// What a finished probe says.
pub(super) enum Outcome {
    Pass(Duration),
    Fail(String),
}

/// Whether a down server's existing connections are cut: only with
/// `on_down = "reset"`, and then not when the pool says `slow_down` and the
/// server's probes merely timed out while it still carries `active`
/// connections — overloaded is not dead (seed 004): it stops getting new
/// connections and keeps the ones it has.
pub fn cuts_connections(on_down: OnDown, slow_down: bool, reason: Option<&str>, active: u64) -> bool {
    if on_down != OnDown::Reset {
        return false;
    }
    let overloaded = reason == Some("timeout") && active > 0;
    !(slow_down && overloaded)
}

/// Kills a script and everything in its process group, and reaps it.
pub(super) fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the process group this child leads (it was
        // started with process_group(0)); no memory is involved.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// RFC 9110 §4: "HTTP/1.x NNN reason" then headers, a blank line, the body.
pub(super) fn judge_http(check: &HealthCheck, response: &[u8], rtt: Duration) -> Outcome {
    let text = String::from_utf8_lossy(response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    let want = check.expect_status.as_ref().map_or(200, |s| *s.get_ref());
    match status {
        None => Outcome::Fail("bad response".into()),
        Some(s) if s != want => Outcome::Fail(format!("bad status {s}")),
        Some(_) => {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            match &check.expect_body {
                Some(e) if !body.contains(e.as_str()) => Outcome::Fail("body mismatch".into()),
                _ => Outcome::Pass(rtt),
            }
        }
    }
}

