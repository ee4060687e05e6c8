//! `[defence]`: how the workers hold up under floods (README,
//! "Defence"). Every key has a default; the section needs a restart to
//! change (the workers are built with it).

use super::bounds::{self, Bound};
use super::cidr::unplaced;
use serde::Deserialize;
use furiwake_dataplane::pipeline::DEFAULT_PUNT_RATES;
use furiwake_dataplane::state::counters::PuntClass;
use toml::Spanned;

/// `[defence]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defence {
    /// Half-open TCP entries (SYN_SENT, SYN_RECV) a worker keeps at most;
    /// a new connection past it, or into a full table, evicts the oldest
    /// half-open entry. Default: a quarter of `flows_per_worker`.
    pub embryonic_per_worker: Option<Spanned<u32>>,
    /// Unreplied entries (half-open TCP, unanswered UDP) one virtual
    /// server holds per worker before its new ones evict its own oldest:
    /// a flood at one service churns that service's entries only.
    /// Default: half of `embryonic_per_worker`.
    pub unreplied_per_service: Option<Spanned<u32>>,
    /// Unreplied entries one source holds per worker (by a bucket of a
    /// keyed hash of its address, 4096 per worker) before its next SYNs
    /// are answered with SYN cookies (virtual servers whose `syn_proxy` is
    /// not `off`): no entry, nothing evicted, so a sender spoofing a
    /// victim's address cannot evict the victim's handshakes. Default:
    /// 1/64 of `embryonic_per_worker`, at least 16.
    pub unreplied_per_source: Option<Spanned<u32>>,
    /// ICMP errors and refusals (TCP RST, port unreachable, fragmentation
    /// needed) each worker may send per second (RFC 1812 §4.3.2.8), as a
    /// token bucket of `icmp_burst`.
    pub icmp_rate: Spanned<u32>,
    pub icmp_burst: Spanned<u32>,
    /// Half-open entries a worker holds before `syn_proxy = "auto"`
    /// virtual servers answer SYNs with cookies. Default: a quarter of
    /// `embryonic_per_worker`.
    pub syn_proxy_threshold: Option<Spanned<u32>>,
    /// `[defence.punt]`: packets per second per worker of each class the
    /// workers hand the control plane (`PuntClass`).
    pub punt: Punt,
}

/// `[defence.punt]`: per class, packets a second per worker; each class
/// has its own token bucket (a quarter second's burst), so a flood of one
/// delays no other. `other` (TCP/UDP to a self IP from anyone but a server,
/// a VIP or an HA peer) is dropped by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Punt {
    pub arp: Spanned<u32>,
    pub vrrp: Spanned<u32>,
    pub ha: Spanned<u32>,
    pub nd: Spanned<u32>,
    pub probe: Spanned<u32>,
    pub icmp: Spanned<u32>,
    pub other: Spanned<u32>,
}

impl Default for Punt {
    fn default() -> Self {
        let [arp, vrrp, ha, nd, probe, icmp, other] = DEFAULT_PUNT_RATES.map(unplaced);
        Self { arp, vrrp, ha, nd, probe, icmp, other }
    }
}

impl Punt {
    /// The rates in `PuntClass` order.
    pub fn rates(&self) -> [u32; PuntClass::COUNT] {
        [&self.arp, &self.vrrp, &self.ha, &self.nd, &self.probe, &self.icmp, &self.other].map(|v| *v.get_ref())
    }

    fn fields(&self) -> [(&'static str, &Spanned<u32>); PuntClass::COUNT] {
        [("arp", &self.arp), ("vrrp", &self.vrrp), ("ha", &self.ha), ("nd", &self.nd), ("probe", &self.probe), ("icmp", &self.icmp), ("other", &self.other)]
    }
}

impl Default for Defence {
    fn default() -> Self {
        Self { embryonic_per_worker: None, unreplied_per_service: None, unreplied_per_source: None, icmp_rate: unplaced(DEFAULT_ICMP_RATE), icmp_burst: unplaced(DEFAULT_ICMP_BURST), syn_proxy_threshold: None, punt: Punt::default() }
    }
}

pub const DEFAULT_ICMP_RATE: u32 = 1000;
pub const DEFAULT_ICMP_BURST: u32 = 50;

impl Defence {
    /// The embryonic budget for tables of `flows` entries.
    pub fn embryonic_max(&self, flows: u32) -> u32 {
        self.embryonic_per_worker.as_ref().map_or((flows / 4).max(1), |v| *v.get_ref())
    }

    /// The per-service unreplied cap for tables of `flows` entries.
    pub fn unreplied_per_service(&self, flows: u32) -> u32 {
        self.unreplied_per_service.as_ref().map_or((self.embryonic_max(flows) / 2).max(1), |v| *v.get_ref())
    }

    /// The per-source-bucket unreplied cap for tables of `flows` entries.
    pub fn unreplied_per_source(&self, flows: u32) -> u32 {
        self.unreplied_per_source.as_ref().map_or((self.embryonic_max(flows) / 64).max(16), |v| *v.get_ref())
    }

    /// The half-open entries past which `auto` proxies, for tables of
    /// `flows` entries.
    pub fn syn_proxy_threshold(&self, flows: u32) -> u32 {
        self.syn_proxy_threshold.as_ref().map_or((self.embryonic_max(flows) / 4).max(1), |v| *v.get_ref())
    }

    /// Each number with its range, for `validate`.
    pub(super) fn bounded(&self) -> Vec<(&'static Bound, &Spanned<u32>)> {
        let mut v = vec![(&bounds::ICMP_RATE, &self.icmp_rate), (&bounds::ICMP_BURST, &self.icmp_burst)];
        if let Some(e) = &self.embryonic_per_worker {
            v.push((&bounds::EMBRYONIC_PER_WORKER, e));
        }
        if let Some(e) = &self.syn_proxy_threshold {
            v.push((&bounds::SYN_PROXY_THRESHOLD, e));
        }
        if let Some(e) = &self.unreplied_per_service {
            v.push((&bounds::UNREPLIED_PER_SERVICE, e));
        }
        if let Some(e) = &self.unreplied_per_source {
            v.push((&bounds::UNREPLIED_PER_SOURCE, e));
        }
        v.extend(bounds::PUNT_RATES.iter().zip(self.punt.fields()).map(|(b, (_, r))| (b, r)));
        v
    }

    /// The section as TOML, for `render`.
    pub(super) fn render(&self) -> String {
        let mut s = String::from("\n[defence]\n");
        if let Some(e) = &self.embryonic_per_worker {
            s.push_str(&format!("embryonic_per_worker = {}\n", e.get_ref()));
        }
        if let Some(e) = &self.syn_proxy_threshold {
            s.push_str(&format!("syn_proxy_threshold = {}\n", e.get_ref()));
        }
        if let Some(e) = &self.unreplied_per_service {
            s.push_str(&format!("unreplied_per_service = {}\n", e.get_ref()));
        }
        if let Some(e) = &self.unreplied_per_source {
            s.push_str(&format!("unreplied_per_source = {}\n", e.get_ref()));
        }
        s.push_str(&format!("icmp_rate = {}\nicmp_burst = {}\n\n[defence.punt]", self.icmp_rate.get_ref(), self.icmp_burst.get_ref()));
        for (k, v) in self.punt.fields() {
            s.push_str(&format!("\n{k} = {}", v.get_ref()));
        }
        s
    }
}
