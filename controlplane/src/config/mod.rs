//! The TOML configuration (README, "Configuration reference").
//!
//! Parsing refuses unknown keys and malformed values; validation refuses
//! dangling references, duplicates and impossible combinations. Every error
//! names the file, line and column and says why, in the form
//! `FILE:LINE:COL: reason`, so an operator can jump to it.
//!
//! - `model`: the serde types, their defaults and spellings.
//! - `validate`: every check beyond the syntax, run by `Config::parse`.
//! - `render`: a `Config` back to TOML (`show config` with its secrets
//!   redacted, `config save` with them).
//! - `save`: `config save`'s file: 0600, atomic, in one directory.
//! - `keyfile`: `[sync] key_file`, read only from a file nobody else can.
//! - `diff`: what a running appliance cannot change without a restart.

mod addrs;
pub mod bounds;
mod cidr;
mod defence;
mod diff;
mod ha;
mod hacheck;
mod ipv6check;
mod keyfile;
mod l7;
mod l7check;
pub(crate) mod model;
mod link;
mod persistence;
mod render;
mod save;
pub mod script;
mod secret;
mod tls;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod ipv6_tests;

pub use addrs::ip4;
pub use diff::restart_needed;
pub use bounds::{MAX_PERSISTENCE_TIMEOUT_S, MAX_WEIGHT};
pub use model::{
    unplaced, AnyRoute, Algorithm, Bond, BondMode, CheckKind, Config, ConsoleConfig, Forwarding, HashOn, HealthCheck, Interface, IpCidr, Ipv4Cidr, Ipv6Cidr, LogLevel, Logging, Management,
    OnDown, PciDriver, Persistence, RssSide, PersistenceKind, Platform, Pool, Protocol, Route, Route6, SameSite, Server, Snat, SynProxyMode, TimeoutSecs, TunnelKind, VirtualServer, DEFAULT_CONSOLE_SOCKET, DEFAULT_GUE_PORT, DEFAULT_MTU,
};
pub use defence::Defence;
pub use l7::{ClientAddress, HeaderAction, HeaderVerb, Limits, Match, Rule, XffMode, L7};
pub use ha::{sync_key_id, SyncConfig, Vrrp};
pub use render::{kebab, key_fingerprint, render, render_with_secrets};
pub use save::{keep_previous, save_dir, target as save_target, write_secret_file};

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no place (unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The text being parsed, for turning byte offsets into line and column.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(r) => {
                let start = r.start.min(self.text.len());
                let before = self.text.get(..start).unwrap_or(self.text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            None => (1, 1),
        };
        ConfigError { file: self.file.to_string(), line, column, message: message.into() }
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}") })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            // An integer that does not fit its key's type is refused with
            // the key's range, as one that fits but is out of range.
            let message = e.span().and_then(|s| bounds::refusal_at(text, s)).unwrap_or_else(|| e.message().trim().to_string());
            src.error(e.span(), message)
        })?;
        cfg.read_key_file(&src)?;
        cfg.read_tls_files(&src)?;
        cfg.compile_scripts(&src)?;
        cfg.validate(&src)?;
        Ok(cfg)
    }
}
