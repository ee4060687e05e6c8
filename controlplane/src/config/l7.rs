//! `[l7]`: the L7 engine, the appliance's own HTTP reverse proxy that
//! serves `protocol = "http"` virtual servers through the exception path
//! (README, "L7 virtual servers"). Every key has a default; the section
//! needs a restart to change (the engine's threads are made at start).

use super::bounds::{self, Bound};
use super::model::{unplaced, Config, Protocol, VirtualServer};
use super::{ConfigError, Source};
use serde::Deserialize;
use toml::Spanned;

/// `[l7]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L7 {
    /// The engine's threads (its tokio runtime's workers).
    pub threads: Spanned<u32>,
    /// The CPUs they may run on (Linux CPU numbers). Default: every CPU
    /// the process may use but the worker lcores' (EAL's `-l`/`--lcores`
    /// map lcore N to CPU N unless told otherwise).
    pub cpus: Option<Spanned<Vec<u32>>>,
}

impl Default for L7 {
    fn default() -> Self {
        Self { threads: unplaced(1), cpus: None }
    }
}

impl L7 {
    /// Each number with its range, for `validate`.
    pub(super) fn bounded(&self) -> Vec<(&'static Bound, &Spanned<u32>)> {
        vec![(&bounds::L7_THREADS, &self.threads)]
    }

    /// The section as TOML, for `render`.
    pub(super) fn render(&self) -> String {
        let mut s = format!("\n[l7]\nthreads = {}\n", self.threads.get_ref());
        if let Some(c) = &self.cpus {
            let list: Vec<String> = c.get_ref().iter().map(u32::to_string).collect();
            s.push_str(&format!("cpus = [{}]\n", list.join(", ")));
        }
        s
    }
}

impl Config {
    /// Does any virtual server need the appliance's own stack (the host
    /// link, its network namespace, the L7 engine)?
    pub fn has_l7(&self) -> bool {
        self.virtual_servers.iter().any(|v| v.protocol.is_l7())
    }
}

impl Protocol {
    /// Served by the L7 engine rather than forwarded.
    pub fn is_l7(self) -> bool {
        matches!(self, Protocol::Http)
    }

    /// The transport under it: two virtual servers on one address and
    /// port of one transport cannot both be served.
    pub fn transport(self) -> Protocol {
        match self {
            Protocol::Http => Protocol::Tcp,
            p => p,
        }
    }
}

impl Config {
    /// An `http` virtual server: the engine connects to its servers from
    /// `local_addresses` (default: the self IP facing them), addresses the
    /// box answers ARP for that no forwarded virtual server or `[[snat]]`
    /// rule uses; `forwarding` and L4 persistence do not apply.
    pub(super) fn validate_l7(&self, src: &Source<'_>, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        if !vs.forwarding.span().is_empty() {
            return Err(src.error(Some(vs.forwarding.span()), format!("virtual_server {name:?}: protocol = \"http\" is proxied by the L7 engine, which opens its own connections to the servers from local_addresses (default: the self IP facing them); forwarding does not apply")));
        }
        if let Some(p) = &vs.persistence {
            return Err(src.error(Some(p.span()), format!("virtual_server {name:?}: persistence for protocol = \"http\" is not built yet (issue 21: cookie and session persistence in the L7 engine)")));
        }
        for a in &vs.local_addresses {
            if !self.interfaces.iter().any(|i| i.address.contains(*a)) {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {name:?}: local address {a} is on no interface's subnet: the box answers ARP for it there")));
            }
            let vip = self.virtual_servers.iter().any(|o| *o.address.get_ref().ip() == *a);
            let forwarded = self.virtual_servers.iter().any(|o| !o.protocol.is_l7() && o.local_addresses.contains(a));
            let snat = self.snat.iter().any(|r| r.address.get_ref() == a);
            if vip || forwarded || snat {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {name:?}: local address {a} is a VIP, a full-NAT local address or a [[snat]] address: the L7 engine's ports there would meet theirs")));
            }
        }
        if let Some(c) = self.l7.cpus.as_ref().filter(|c| c.get_ref().is_empty()) {
            return Err(src.error(Some(c.span()), "[l7] cpus: name at least one CPU (or leave it out)"));
        }
        Ok(())
    }
}
