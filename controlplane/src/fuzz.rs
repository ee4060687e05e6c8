//! Fuzz targets of the control plane's parsers, one input each: the
//! configuration file (`config::Config::parse`) and the console's command
//! line (`console::command::parse`). Both the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`) and the stable mutation driver the test suite
//! runs (`examples/fuzz_parsers.rs`, `scripts/fuzz.sh`) call them; `Err`
//! names a broken invariant (a panic is one too).

use crate::config::{render, render_with_secrets, Config};
use crate::modules::console::command;

mod vrrp;
pub use vrrp::vrrp;

/// A configuration file's bytes: parsing never panics; a refusal names a
/// line of the text (or line 0, for a whole-file problem); an accepted
/// configuration renders (secrets included, as `config save` writes it)
/// to TOML that parses back to the same rendering, and its shown
/// rendering (`show config`) holds no secret.
pub fn config(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else { return Ok(()) };
    match Config::parse("fuzz.toml", text) {
        Err(e) => {
            let lines = text.lines().count().max(1) + 1;
            if e.line > lines {
                return Err(format!("refusal at line {} of a {lines}-line text: {e}", e.line));
            }
            if e.message.is_empty() {
                return Err(format!("refusal without a reason at line {}", e.line));
            }
            Ok(())
        }
        Ok(c) => {
            let once = render_with_secrets(&c);
            let again = Config::parse("rendered.toml", &once).map_err(|e| format!("the rendering of an accepted config is refused: {e}\n{once}"))?;
            let twice = render_with_secrets(&again);
            if once != twice {
                return Err(format!("rendering is not stable:\n{once}\n---\n{twice}"));
            }
            let shown = render(&c);
            let lines = c.sync.iter().filter_map(|s| s.key.as_ref().map(|k| format!("key = \"{}\"", k.get_ref())));
            let mut lines = lines.chain(c.vrrp.iter().filter_map(|v| v.auth_password.as_ref().map(|p| format!("auth_password = \"{}\"", p.get_ref()))));
            if let Some(l) = lines.find(|l| shown.lines().any(|s| s == l)) {
                return Err(format!("show config shows a secret: {l}\n{shown}"));
            }
            Ok(())
        }
    }
}

/// A console line's bytes: parsing never panics, and a refusal says why.
pub fn console(data: &[u8]) -> Result<(), String> {
    let Ok(line) = std::str::from_utf8(data) else { return Ok(()) };
    match command::parse(line) {
        Err(e) if e.trim().is_empty() => Err(format!("refusal without a reason for {line:?}")),
        _ => Ok(()),
    }
}
